"""The trained `local` model (issue 24): a correction of the zero-shot logits, shrunk toward them
per label, with a nearest-example term; labels without examples take the catch-all's."""

import numpy as np
from scipy.sparse import random as sparse_random
from sklearn.linear_model import LogisticRegression

from backend.backends.base import LabelledText, LabelSpec
from backend.backends.local import train
from backend.backends.local.trained import KernelLogistic, correction_weights, folds_of
from tests.backends.test_local_model import INVOICE, PAYSLIP, RECIPE, W9, backend, scores

__all__ = ["backend"]  # the module-scoped fixture, shared


def test_the_kernel_form_fits_what_sklearn_fits():
    rng = np.random.default_rng(0)
    features = sparse_random(30, 2000, density=0.02, random_state=1, format="csr")
    y = [str(v) for v in rng.integers(0, 3, 30)]
    ours = KernelLogistic(1.0).fit(features, y).decision_function(features)
    reference = LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000, tol=1e-10)
    theirs = reference.fit(features, y).decision_function(features)
    # Multinomial logits are defined up to a constant per row.
    ours, theirs = ours - ours.mean(1, keepdims=True), theirs - theirs.mean(1, keepdims=True)
    assert np.abs(ours - theirs).max() < 0.02 * max(1.0, np.abs(theirs).max())


def test_each_labels_correction_is_weighted_by_its_examples():
    labels = ["a", "b", "c", "other"]
    weights = correction_weights(labels, {"a": 8, "b": 2, "other": 4}, 1.0, 2.0, "other")
    assert np.allclose(weights, [0.8, 0.5, 4 / 6, 4 / 6])  # c takes the catch-all's
    assert not correction_weights(labels, {"a": 8}, 0.0, 2.0).any()  # weight 0: zero-shot


def test_folds_deal_every_label_round_including_single_examples():
    y = ["a"] * 6 + ["b"] * 3 + ["c"]
    folds = folds_of(y)
    assert folds is not None and sorted(np.concatenate(folds).tolist()) == list(range(10))
    assert all(len({y[i] for i in fold}) >= 1 for fold in folds)
    assert folds_of(["a", "b", "c"]) is None  # one example each: nothing to hold out


def test_examples_of_other_do_not_pull_an_untaught_label_into_other(backend):
    # Only w9, invoice and other have examples; a pay stub is none of the taught named kinds,
    # which the learned model cannot tell from `other`: its description decides.
    examples = [LabelledText("w9", W9 + f" copy {i}") for i in range(4)]
    examples += [LabelledText("invoice", INVOICE.replace("2024-117", str(i))) for i in range(4)]
    examples += [LabelledText("other", f"{RECIPE} variation {i}") for i in range(4)]
    examples += [
        LabelledText("other", f"Minutes of the board meeting number {i}") for i in range(4)
    ]
    result = scores(backend, PAYSLIP, examples)
    assert result.confidence_method == "local_trained" and result.label == "payslip"


def test_a_reviewed_document_teaches_its_near_duplicates(backend):
    # Descriptions that say nothing of the documents: three examples each, and a new document
    # of an example's template (other values) gets that example's label.
    labels = [
        LabelSpec("alpha", "first kind"),
        LabelSpec("beta", "second kind"),
        LabelSpec("other", "Any document that is none of the above"),
    ]
    alpha = (
        "Lieferschein Nr. {n} Versandart Spedition Gewicht {w} kg Colli {c} Empfänger Lager Nord"
    )
    beta = "Protokoll der Sitzung {n} Anwesend: {w} Mitglieder Tagesordnung Punkt {c} Beschluss"
    examples = [LabelledText("alpha", alpha.format(n=101 + i, w=12 * i, c=i)) for i in range(3)]
    examples += [LabelledText("beta", beta.format(n=7 + i, w=9 + i, c=2 * i)) for i in range(3)]
    examples += [LabelledText("other", f"{RECIPE} variation {i}") for i in range(3)]
    model = train(labels, examples)
    assert model.weight > 0  # chosen on the examples' folds: the examples beat the descriptions
    assert scores(backend, alpha.format(n=202, w=40, c=8), examples, labels).label == "alpha"
    assert scores(backend, beta.format(n=8, w=11, c=5), examples, labels).label == "beta"
