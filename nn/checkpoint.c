/* nn/checkpoint.c - to be written */
#include "internal.h"
