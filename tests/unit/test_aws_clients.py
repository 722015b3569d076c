"""The functions' botocore session: its loader finds only the services they call, and the
clients it makes are botocore's, with botocore's models."""

from __future__ import annotations

import botocore.session
import pytest
from botocore.exceptions import UnknownServiceError

from waituntil.adapters.aws import SERVICES, CalledServicesLoader, aws_session

pytestmark = pytest.mark.usefixtures("_region")


@pytest.fixture
def _region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def test_the_session_lists_only_the_services_the_functions_call() -> None:
    # Given the functions' session / When its loader lists the services it has models for
    loader = aws_session().get_component("data_loader")
    # Then it is the project's loader, and it names the called services only: it did not walk
    # every service directory botocore ships (about 2,700 file-system checks at first call)
    assert isinstance(loader, CalledServicesLoader)
    assert loader.list_available_services("service-2") == sorted(SERVICES)
    assert loader.list_available_services("endpoint-rule-set-1") == sorted(SERVICES)


@pytest.mark.parametrize("service", SERVICES)
def test_each_client_has_botocore_s_own_model_of_its_service(service: str) -> None:
    # Given a stock botocore session beside the functions' one
    stock = botocore.session.get_session().create_client(service, region_name="us-east-1")
    # When the functions' session makes the same client
    ours = aws_session().create_client(service, region_name="us-east-1")
    # Then it has the same API version, operations and endpoint as botocore's
    assert ours.meta.service_model.api_version == stock.meta.service_model.api_version
    assert ours.meta.service_model.operation_names == stock.meta.service_model.operation_names
    assert ours.meta.endpoint_url == stock.meta.endpoint_url


def test_a_service_the_functions_do_not_call_is_refused_by_name() -> None:
    # Given the functions' session / When a client of another service is asked for
    # Then botocore's own error names the service and the ones the loader knows
    with pytest.raises(UnknownServiceError, match="cloudformation"):
        aws_session().create_client("cloudformation", region_name="us-east-1")
