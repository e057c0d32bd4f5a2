# convert.py IN.cu OUT.cpp - rewrites every launch  kernel<<<grid, block>>>(args);  into
#   emu_launch(dim3(grid), dim3(block), [&]() { kernel(args); });
# keeping the line count, so compiler messages point at the right .cu line.
import re
import sys

LAUNCH = re.compile(r'([A-Za-z_][A-Za-z0-9_]*(?:<[^<>;()]*>)?)\s*<<<(.*?)>>>\s*\((.*?)\);', re.S)


def split_top_level_comma(config):
    depth = 0
    for i, ch in enumerate(config):
        if ch in '([':
            depth += 1
        elif ch in ')]':
            depth -= 1
        elif ch == ',' and depth == 0:
            return config[:i], config[i + 1:]
    sys.exit('convert.py: launch configuration without grid and block: ' + config)


def launch(match):
    grid, block = split_top_level_comma(match.group(2))
    call = 'emu_launch(dim3(%s), dim3(%s), [&]() { %s(%s); });' % (grid, block, match.group(1), match.group(3))
    return call + '\n' * match.group(0).count('\n')


source = open(sys.argv[1]).read()
converted, count = LAUNCH.subn(launch, source)
if count == 0 and '<<<' in source:
    sys.exit('convert.py: %s has launches this script cannot parse' % sys.argv[1])
with open(sys.argv[2], 'w') as out:
    out.write('#line 1 "%s"\n' % sys.argv[1] + converted)
