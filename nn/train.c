/* nn/train.c - to be written */
#include "internal.h"
