"""xoshiro.py - tapegrad's generator (engine/context.c, xoshiro256**) in
Python, for the scripts of tests/torch that reproduce its dropout draws."""

M64 = (1 << 64) - 1


class Xoshiro:
    """tapegrad's generator, from a state the driver printed."""

    def __init__(self):
        self.s = [1, 2, 3, 4]

    def uniforms(self, n):
        s, out = self.s, []
        for _ in range(n):
            r = ((((s[1] * 5) & M64) << 7 | ((s[1] * 5) & M64) >> 57) & M64) * 9 & M64
            t = (s[1] << 17) & M64
            s[2] ^= s[0]
            s[3] ^= s[1]
            s[1] ^= s[2]
            s[0] ^= s[3]
            s[2] ^= t
            s[3] = ((s[3] << 45) | (s[3] >> 19)) & M64
            out.append((r >> 11) * 2.0 ** -53)
        return out
