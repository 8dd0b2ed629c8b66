/* ops/softmax.c - to be written */
#include "internal.h"
