/* ops/matrix.c - to be written */
#include "internal.h"
