/* nn/mlp.c - to be written */
#include "internal.h"
