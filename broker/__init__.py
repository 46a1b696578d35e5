"""The broker daemon: ``broker serve`` (broker.server) and the console tools (broker.cli).

Layout: sans-IO cores (metadata_cache, controller_plan, placement, fetch_purgatory,
group_commit, producer_id_blocks, topic_config, topic_names, znodes) and the trio
shells around them (server, connection, dispatcher, handlers/, metadata_sync,
controller, registration, replica_manager, committer, topic_admin,
producer_id_manager); storage lives in broker.log. See docs/broker.md.
"""
