"""A local Supabase stand-in: PostgREST's ``/rest/v1`` over SQLite, with Database Webhooks.

from local.supabase_standin import SupabaseStandIn, WebhookConfig, make_service_key

with SupabaseStandIn(
    {"articles": "id"},
    webhook=WebhookConfig(url=...),
    anon_policies={"articles": "published=eq.true"},  # Row Level Security for the anon key
) as standin:
    client = create_client(standin.url, standin.service_key)  # every row
    public = create_client(standin.url, standin.anon_key)  # published rows only
"""

from local.supabase_standin.errors import PostgrestError
from local.supabase_standin.keys import make_anon_key, make_service_key
from local.supabase_standin.server import Fault, RequestRecord, SupabaseStandIn
from local.supabase_standin.webhooks import WebhookConfig, WebhookDelivery

__all__ = [
    "Fault",
    "PostgrestError",
    "RequestRecord",
    "SupabaseStandIn",
    "WebhookConfig",
    "WebhookDelivery",
    "make_anon_key",
    "make_service_key",
]
