"""ConsumerFunction: SQS -> Supabase read -> DynamoDB. The deferred half of waitUntil."""
