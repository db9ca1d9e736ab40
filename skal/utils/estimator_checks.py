"""scikit-learn's estimator checks on skal's estimators: the few that cannot apply.

Run scikit-learn's own checks on any skal estimator::

    from sklearn.utils.estimator_checks import check_estimator, parametrize_with_checks
    from skal.utils.estimator_checks import expected_failed_checks

    check_estimator(CNNClassifier(), expected_failed_checks=expected_failed_checks(
        CNNClassifier()))

    @parametrize_with_checks([CNNClassifier(), ActiveLearningClassifier()],
                             expected_failed_checks=expected_failed_checks)
    def test_sklearn_compatible(estimator, check):
        check(estimator)

Every other check passes with the estimators' default settings (tabular ``(n, d)``
input is treated as one-row images, see :class:`skal.CNNClassifier`).
"""

__all__ = ["expected_failed_checks"]

_SKORCH_INIT = (
    "skorch's NeuralNet.__init__ sets history_, initialized_ and virtual_params_ and "
    "stores prefixed keyword arguments (iterator_train__shuffle=True, module__*) as "
    "attributes: skorch's design, which get_params/clone/set_params follow."
)
_FLOAT32_BATCHES = (
    "The network computes in float32 with batched convolutions and matrix products whose "
    "rounding depends on the batch size: one-sample and whole-batch outputs differ by "
    "~1e-6, above the check's 1e-7 tolerance (predictions agree)."
)


def _is_skal_net(estimator):
    from ..nets.base import ImageClassifierMixin
    return isinstance(estimator, ImageClassifierMixin)


def expected_failed_checks(estimator):
    """``{check_name: reason}`` for scikit-learn checks that cannot pass on ``estimator``.

    Meant for ``parametrize_with_checks(..., expected_failed_checks=...)`` and
    ``check_estimator(..., expected_failed_checks=...)``. Estimators that are not
    skal's get ``{}``.
    """
    from ..estimator import ActiveLearningClassifier

    if isinstance(estimator, ActiveLearningClassifier):
        if _is_skal_net(estimator._base_estimator()):
            return {"check_methods_subset_invariance": _FLOAT32_BATCHES}
        return {}
    if not _is_skal_net(estimator):
        return {}
    return {
        "check_no_attributes_set_in_init": _SKORCH_INIT,
        "check_methods_subset_invariance": _FLOAT32_BATCHES,
    }
