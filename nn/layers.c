/* nn/layers.c - to be written */
#include "internal.h"
