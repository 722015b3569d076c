"""What a read answers, without AWS: a body too large for one Lambda response."""

from __future__ import annotations

import pytest

from waituntil.core.errors import ResponseTooLarge
from waituntil.read.response import check_response_size


def test_a_body_too_large_for_lambda_is_refused_before_lambda_fails() -> None:
    # Given a body that JSON-escapes past 6 MB (every quote doubles) / Then it is refused
    with pytest.raises(ResponseTooLarge):
        check_response_size('"' * 3_100_000)
    check_response_size("x" * 500_000)  # ordinary pages pass without being measured
