"""What `supervisor run -j 2 --task sleep --input FILE` does, as a Python program a shell
user would write and time: read the lines of FILE, run them through
`multiprocessing.Pool(2).map` (its default chunks, fork), write the results to stdout
in input order. The bench times the whole process, as it times ours: the interpreter's
start, the imports and the input's reading included (`python_peer.py cli_lines` times
the map alone, from inside).

Usage: python3 benches/python_cli.py FILE
"""

import multiprocessing
import sys
import time


def sleep_line(line):
    """What `--task sleep` does with a line like `0ms`."""
    ms = int(line.strip().removesuffix("ms"))
    if ms:
        time.sleep(ms / 1000)
    return line


def main():
    with open(sys.argv[1]) as f:
        lines = f.readlines()
    with multiprocessing.get_context("fork").Pool(2) as pool:
        sys.stdout.writelines(pool.map(sleep_line, lines))


if __name__ == "__main__":
    main()
