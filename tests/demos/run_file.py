"""run_file.py - a run's file (demos/train --save) with some of its values
changed and its CRC made good again, for check_resume.sh: files train never
writes, which it must refuse or read as they are.

  run_file.py v1 SRC DST            the model's tensors alone, as a
                                    version-1 file (no metadata, optimizer
                                    state or standardiser)
  run_file.py meta SRC DST KEY VAL  metadata entry KEY's first value made VAL
                                    (an f64 or i64 number, or the whole
                                    string); f64:V makes an i64 entry an f64
  run_file.py tensor SRC DST NAME V every element of tensor NAME made V
"""
import struct
import sys
import zlib

F64, I64, STRING = 0, 1, 2


def read(path):
    """(version, [[key, kind, n, payload]], [[name, dtype, shape, data]])"""
    b = open(path, 'rb').read()[:-4]
    version, count, entries = struct.unpack_from('<III', b, 8)
    o = 20
    meta = []
    for _ in range(entries):
        kl, = struct.unpack_from('<H', b, o)
        key = b[o + 2:o + 2 + kl].decode()
        o += 2 + kl
        kind = b[o]
        n, = struct.unpack_from('<I', b, o + 1)
        o += 5
        size = n if kind == STRING else 8 * n
        meta.append([key, kind, n, bytearray(b[o:o + size])])
        o += size
    tensors = []
    for _ in range(count):
        nl, = struct.unpack_from('<H', b, o)
        name = b[o + 2:o + 2 + nl].decode()
        o += 2 + nl
        dt, nd = b[o], b[o + 1]
        o += 2
        shape = struct.unpack_from('<%dQ' % nd, b, o)
        o += 8 * nd
        n = 1
        for d in shape:
            n *= d
        size = n * (4 if dt in (0, 2) else 8)
        tensors.append([name, dt, shape, bytearray(b[o:o + size])])
        o += size
    return version, meta, tensors


def tensor_bytes(t):
    name, dt, shape, data = t
    return (struct.pack('<H', len(name)) + name.encode() + bytes([dt, len(shape)]) +
            struct.pack('<%dQ' % len(shape), *shape) + bytes(data))


def write(path, version, meta, tensors):
    body = b'TGCKPT\0\0' + struct.pack('<II', version, len(tensors))
    if version >= 2:
        body += struct.pack('<I', len(meta))
        for key, kind, n, payload in meta:
            body += (struct.pack('<H', len(key)) + key.encode() + bytes([kind]) +
                     struct.pack('<I', n) + bytes(payload))
    body += b''.join(tensor_bytes(t) for t in tensors)
    open(path, 'wb').write(body + struct.pack('<I', zlib.crc32(body)))


def main(how, src, dst, *args):
    version, meta, tensors = read(src)
    if how == 'v1':
        keep = [t for t in tensors
                if not t[0].endswith(('.m', '.v')) and not t[0].startswith('standardiser.')]
        write(dst, 1, [], keep)
        return
    key, val = args
    if how == 'meta':
        for e in meta:
            if e[0] != key:
                continue
            if val.startswith('f64:'):  # an i64 entry made an f64 one
                e[1], val = F64, val[4:]
            if e[1] == STRING:
                e[2], e[3] = len(val.encode()), bytearray(val.encode())
            else:
                e[3][0:8] = struct.pack('<d' if e[1] == F64 else '<q',
                                        float(val) if e[1] == F64 else int(val))
    elif how == 'tensor':
        for t in tensors:
            if t[0] == key:
                f = '<f' if t[1] == 0 else '<d'
                t[3] = bytearray(struct.pack(f, float(val)) * (len(t[3]) // struct.calcsize(f)))
    write(dst, version, meta, tensors)


main(*sys.argv[1:])
