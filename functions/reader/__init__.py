"""ReaderFunction: GET /{table}[/{id}] -> DynamoDB cache. Imports neither supabase nor postgrest."""
