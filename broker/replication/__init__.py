"""Replication (DESIGN §8): leaders, followers, ISR, high watermark, leader epochs.

Sans-IO cores:

- ``leader_state``      a leader's view of its followers: ISR changes and the high watermark
- ``follower_state``    one followed partition: truncate first, then fetch; what errors mean
- ``epochs``            OffsetForLeaderEpoch answers and the follower's truncation decision
- ``ack_purgatory``     acks=all produces waiting for the high watermark
- ``reassignment``      the controller's next step when moving a partition
- ``lease``             (``SessionLease``) when a leader may acknowledge writes
- ``admin_znodes``      controlled shutdowns, preferred elections, reassignments in /admin

Trio shells:

- ``fetcher``             one fetcher task per leader broker (follower side)
- ``isr_writer``          the leader's compare-and-set writes of ISR changes
- ``produce_acks``        answers acks=all produces once committed
- ``lease``               (``LeaseKeeper``) renews the lease
- ``controlled_shutdown`` hands leaderships over before a broker stops
- ``hw_checkpoint``       high watermarks that survive a restart

The replica manager (broker.replica_manager) ties them to the hosted partitions;
the controller (broker.controller) makes the cluster-wide decisions.
"""
