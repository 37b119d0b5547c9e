"""DistTrain's stratified test split (Data:TestFraction, Data:TestSplitSeed), reproduced exactly.

Per class, the round(fraction * n_c) rows (halves rounded up) with the smallest key
SplitMix64.Mix(SplitMix64.Mix(seed) ^ row) go to the test split (src/DistTrain.Core/Data/TestSplit.cs).

Run as a script it prints the test rows of a label list, for the test that checks both implementations agree:
    python3 test_split.py FRACTION SEED LABEL...
"""
import math
import sys

MASK = (1 << 64) - 1


def mix(value):
    """SplitMix64's output function of value + the golden-ratio increment (Vigna's splitmix64.c)."""
    z = (value + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def test_indices(labels, fraction, seed):
    """Sorted row indices of the test split of a sequence of class labels."""
    seed_key = mix(seed & MASK)
    by_class = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append((mix(seed_key ^ index), index))
    test = []
    for members in by_class.values():
        count = math.floor(fraction * len(members) + 0.5)
        test.extend(index for _, index in sorted(members)[:count])
    return sorted(test)


if __name__ == "__main__":
    fraction, seed = float(sys.argv[1]), int(sys.argv[2])
    print(" ".join(str(i) for i in test_indices([int(v) for v in sys.argv[3:]], fraction, seed)))
