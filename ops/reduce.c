/* ops/reduce.c - to be written */
#include "internal.h"
