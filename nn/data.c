/* nn/data.c - to be written */
#include "internal.h"
