"""scikit-learn's MLPClassifier on the CSV data sets that Debian's python3-sklearn ships, on DistTrain's split.

Reads each file as configs/sklearn-*.json does (the first line of iris, wine and breast cancer is a summary, not
data; the label is the last column), holds out the same 25% test rows as DistTrain (test_split.py), standardizes
each feature with the training rows' mean and population std (DistTrain's PerFeature normalization, sklearn's
StandardScaler), and trains MLPClassifier with its defaults (100 ReLU units, Adam at 0.001, alpha 1e-4, batch 200,
at most 200 epochs) for random_state 1, 2 and 3. Prints one markdown row per data set.

    /usr/bin/python3 tests/baselines/sklearn_mlp.py
"""
import os
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from test_split import test_indices

DATA = "/usr/lib/python3/dist-packages/sklearn/datasets/data"
SETS = [("iris", "iris.csv", 1), ("wine", "wine_data.csv", 1), ("breast cancer", "breast_cancer.csv", 1), ("digits", "digits.csv.gz", 0)]
FRACTION, SPLIT_SEED, SEEDS = 0.25, 0, (1, 2, 3)


def main():
    print("| data set | train / test rows | MLPClassifier seeds 1, 2, 3 | mean |")
    print("|---|---|---|---|")
    for name, file, skip in SETS:
        table = np.loadtxt(os.path.join(DATA, file), delimiter=",", skiprows=skip)
        x, y = table[:, :-1], table[:, -1].astype(int)
        test = np.zeros(len(y), dtype=bool)
        test[test_indices(y.tolist(), FRACTION, SPLIT_SEED)] = True
        scaler = StandardScaler().fit(x[~test])
        x_train, x_test = scaler.transform(x[~test]), scaler.transform(x[test])
        scores = []
        for seed in SEEDS:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model = MLPClassifier(random_state=seed).fit(x_train, y[~test])
            scores.append(100 * model.score(x_test, y[test]))
        print(f"| {name} | {(~test).sum()} / {test.sum()} | {', '.join(f'{s:.2f}%' for s in scores)} | {np.mean(scores):.2f}% |")


if __name__ == "__main__":
    main()
