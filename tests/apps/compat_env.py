#!/usr/bin/env python3
"""Reads its input, then prints the environment variables named on its command line."""
import os
import sys

sys.stdin.read()
for name in sys.argv[1:]:
    print(f"{name}={os.environ.get(name, '<unset>')}")
