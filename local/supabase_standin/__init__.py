"""A local Supabase stand-in: PostgREST's ``/rest/v1`` over SQLite, with Database Webhooks.

from local.supabase_standin import SupabaseStandIn, WebhookConfig, make_service_key

with SupabaseStandIn({"articles": "id"}, webhook=WebhookConfig(url=...)) as standin:
    client = create_client(standin.url, standin.service_key)
"""

from local.supabase_standin.errors import PostgrestError
from local.supabase_standin.keys import make_service_key
from local.supabase_standin.server import Fault, RequestRecord, SupabaseStandIn
from local.supabase_standin.webhooks import WebhookConfig, WebhookDelivery

__all__ = [
    "Fault",
    "PostgrestError",
    "RequestRecord",
    "SupabaseStandIn",
    "WebhookConfig",
    "WebhookDelivery",
    "make_service_key",
]
