/* ops/unary.c - to be written */
#include "internal.h"
