"""ReceiverFunction: API Gateway -> SQS. Imports neither supabase nor postgrest (cold start)."""
