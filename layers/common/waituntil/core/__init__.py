"""What every part of the layer shares: settings, table policies, the list order, the message
contract, typed errors, observability. Imports nothing else of the layer."""
