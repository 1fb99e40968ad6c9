"""From what a caller hands over to what goes on the wire: composition, recipients,
aliases, the envelope.  Pure: no network, no queue."""
