"""The durable local queue: the spool on disk, delivery from it, the deliverer daemon,
listing, and the mail log.  Below the commands, above the message and the core."""
