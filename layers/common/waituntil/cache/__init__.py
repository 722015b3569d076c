"""The cache's model (rows, list versions, ports), its DynamoDB layout and item codecs, and the
pure planning of a list patch. Imports ``core`` only."""
