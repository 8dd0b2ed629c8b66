/* tapegrad_nn.h */
#include "tapegrad.h"
