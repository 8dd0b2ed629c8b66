/* nn/init.c - to be written */
#include "internal.h"
