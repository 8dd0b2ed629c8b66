/* ops/index.c - to be written */
#include "internal.h"
