#!/usr/bin/env python3
"""Instructions per function from a QEMU TCG execution log.

Record a run with QEMU's exec and in_asm logs, e.g. the fast-hypercall bench:

  target/debug/tessera --emulator qemu --timeout 300 --smp 1 \
      --manifest tests/manifests/hypercall-bench.toml --serial-log /tmp/hc.log \
      --qemu-arg=-icount --qemu-arg=shift=0 \
      --qemu-arg=-d --qemu-arg=exec,nochain,in_asm --qemu-arg=-D --qemu-arg=/tmp/q.log

then attribute every executed translation block's instructions to the
function holding it:

  tools/qemu-profile/qemu_profile.py /tmp/q.log --user vid --loop 200 --guest-range 0x100000-0x200000

Symbols come from the release images in target/bare (the kernel for
addresses in the upper half, --user for ring-3 ones at 0x200000..0x400000,
--guest for the rest). Every task is linked at 0x200000, so name the one
the window runs. The window is either --lines FIRST LAST of the log, or,
with --loop N, from the first to the last execution of the first guest
block run exactly N times (a bench's loop), N - 1 rounds; figures are
then per round. --callers SYMBOL attributes SYMBOL (memcpy, say) to
the functions that entered it; --source SYMBOL splits one function by
source line (addr2line).
"""
import argparse
import bisect
import collections
import os
import subprocess
import sys

BARE = os.path.join(os.path.dirname(__file__), '..', '..', 'target', 'bare', 'x86_64-unknown-none', 'release')


def symbols(path):
    out = subprocess.run(['nm', '-C', '--defined-only', '-n', path], capture_output=True, text=True, check=True).stdout
    table = []
    for line in out.splitlines():
        parts = line.split(' ', 2)
        if len(parts) == 3 and parts[1] in 'tTwW':
            table.append((int(parts[0], 16), parts[2]))
    return [a for a, _ in table], [n for _, n in table]


class Symbolizer:
    def __init__(self, kernel, user, guest):
        self.images = {'k': kernel, 'u': user, 'g': guest}
        self.tables = {k: symbols(p) for k, p in self.images.items()}

    def image(self, pc):
        if pc >= 0xffff_8000_0000_0000:
            return 'k'
        return 'u' if 0x20_0000 <= pc < 0x40_0000 else 'g'

    def name(self, pc):
        key = self.image(pc)
        addresses, names = self.tables[key]
        i = bisect.bisect_right(addresses, pc) - 1
        return key + ':' + (names[i][:100] if i >= 0 else '?')


def blocks(log):
    """Yields ('tb', pc, instructions) for each translation, ('exec', pc) per execution, with the line number."""
    start, count = None, 0
    with open(log, errors='replace') as f:
        for n, line in enumerate(f):
            if line.startswith('IN:'):
                start, count = None, 0
            elif line.startswith('0x') and ':  ' in line[:22]:
                if start is None:
                    start = int(line.split(':', 1)[0], 16)
                count += 1
            elif start is not None and not line.strip():
                yield n, 'tb', start, count
                start = None
            elif line.startswith('Trace'):
                yield n, 'exec', int(line.split('[', 1)[1].split('/')[1], 16), 0


def loop_window(log, rounds, low, high):
    runs = collections.Counter()
    lines = {}
    for n, kind, pc, _ in blocks(log):
        if kind == 'exec' and low <= pc < high:
            runs[pc] += 1
            lines.setdefault(pc, [n, n])[1] = n
    candidates = [pc for pc, c in runs.items() if c == rounds]
    if not candidates:
        sys.exit(f'no guest block in {low:#x}..{high:#x} ran exactly {rounds} times')
    pc = min(candidates, key=lambda p: lines[p][0])
    return lines[pc]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('log')
    ap.add_argument('--user', default='vid', help='ring-3 image the window runs (target/bare name or path)')
    ap.add_argument('--guest', default='guest-testkernel')
    ap.add_argument('--kernel', default='tessera-microkernel')
    ap.add_argument('--lines', nargs=2, type=int, metavar=('FIRST', 'LAST'))
    ap.add_argument('--loop', type=int, metavar='N')
    ap.add_argument('--guest-range', default='0x100000-0x200000')
    ap.add_argument('--top', type=int, default=40)
    ap.add_argument('--callers', metavar='SYMBOL')
    ap.add_argument('--source', metavar='SYMBOL')
    args = ap.parse_args()
    image = lambda name: name if os.path.sep in name else os.path.join(BARE, name)
    sym = Symbolizer(image(args.kernel), image(args.user), image(args.guest))
    if args.lines:
        first, last = args.lines
    elif args.loop:
        low, high = (int(x, 16) for x in args.guest_range.split('-'))
        first, last = loop_window(args.log, args.loop, low, high)
    else:
        first, last = 0, float('inf')
    # From a block's first run to its last: one round fewer than it ran.
    per = max(args.loop - 1, 1) if args.loop else 1
    size = {}
    total = collections.Counter()
    runs = collections.Counter()
    callers = collections.Counter()
    source = collections.Counter()
    previous, inside = None, False
    for n, kind, pc, count in blocks(args.log):
        if kind == 'tb':
            size[pc] = count
            continue
        if not first <= n <= last:
            continue
        name = sym.name(pc)
        instructions = size.get(pc, 0)
        total[name] += instructions
        runs[name] += 1
        if args.callers and name == args.callers:
            if not inside:
                inside = True
            callers[previous] += instructions
        else:
            inside, previous = False, name
        if args.source and name == args.source:
            source[pc] += instructions
    everything = sum(total.values())
    print(f'log lines {first}..{last}: {everything} instructions' + (f', {everything / per:.0f} per round of {per}' if per > 1 else ''))
    if args.callers:
        print(f'{args.callers}, by caller (instructions per round):')
        for name, c in callers.most_common(args.top):
            print(f'{c / per:10.1f}  {name}')
        return
    if args.source:
        path = sym.images[sym.image(next(iter(source), 0))]
        print(f'{args.source}, by source line (instructions per round):')
        lines = collections.Counter()
        for pc, c in source.items():
            where = subprocess.run(['addr2line', '-e', path, f'{pc:x}'], capture_output=True, text=True).stdout.strip()
            lines[where] += c
        for where, c in lines.most_common(args.top):
            print(f'{c / per:10.1f}  {where}')
        return
    print('instructions per round, share, blocks run, function:')
    for name, c in total.most_common(args.top):
        print(f'{c / per:10.1f} {100 * c / everything:5.1f}% {runs[name]:8d}  {name}')


if __name__ == '__main__':
    main()
