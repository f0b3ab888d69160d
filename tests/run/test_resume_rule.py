"""The resume rule every entry point shares."""

import pytest

from pollinator.colonies.models import ProcessState
from pollinator.run.resume import is_active, is_resumable


@pytest.mark.parametrize("state, active, resumable", [
    ("WAITING", True, True), ("RUNNING", True, True), ("SUCCESS", False, True),
    ("FAILED", False, False), ("CANCELLED", False, False)])
def test_states(state, active, resumable):
    for form in (state, ProcessState[state], int(ProcessState[state])):
        assert is_active(form) is active and is_resumable(form) is resumable
