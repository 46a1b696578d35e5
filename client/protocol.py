"""The broker's wire contract: api keys, payload shapes and error codes.

Every request is ``[api, version, xid, payload]`` with ``payload`` a msgpack map
(client.wire). Api keys are Kafka's where Kafka has the api; every api starts at
version 0. Record data travels as ``bytes`` holding one or more record batches
(client.records) — the broker never decodes records on produce or fetch.

Errors: the envelope's error code is for request-level failures (unknown api,
bad version, malformed payload). Per-partition and per-topic outcomes carry
their own ``error_code`` (0 = none) and ``error_message`` fields, as in Kafka.
Broker error codes are ``100 + Kafka's code`` so a Kafka user can map them.

Request payload -> response payload, per api:

PRODUCE (0)        {acks: 0 | 1 | -1, timeout_ms, producer_id (-1 if none),
                    topics: [{topic, partitions: [{partition, records: bytes}]}]}
                   -> {topics: [{topic, partitions: [{partition, error_code,
                       error_message, base_offset, log_append_time_ms,
                       log_start_offset}]}]}
                   With acks 0 the client sends xid 0 and the broker sends no
                   response at all (Kafka's fire-and-forget).
FETCH (1)          {replica_id: -1 (consumer) | broker id, max_wait_ms, min_bytes,
                    max_bytes, topics: [{topic, partitions: [{partition,
                    fetch_offset, partition_max_bytes, current_leader_epoch (-1)}]}]}
                   -> {topics: [{topic, partitions: [{partition, error_code,
                       error_message, high_watermark, log_start_offset,
                       records: bytes}]}]}
                   Long-poll: answered as soon as min_bytes are available or
                   max_wait_ms has passed. Consumers read below the high watermark.
LIST_OFFSETS (2)   {topics: [{topic, partitions: [{partition, timestamp}]}]}
                   timestamp -1 = latest (log end), -2 = earliest (log start),
                   otherwise the first offset whose batch max timestamp >= it
                   -> {topics: [{topic, partitions: [{partition, error_code,
                       error_message, offset (-1 if none), timestamp}]}]}
METADATA (3)       {topics: [name] | nil (all), allow_auto_topic_creation: bool}
                   -> {cluster_id, controller_id, brokers: [{node_id, host, port,
                       rack}], topics: [{name, error_code, error_message,
                       internal, partitions: [{partition, error_code, leader,
                       leader_epoch, replicas, isr}]}]}
API_VERSIONS (18)  {} -> {api_versions: [[api, min_version, max_version]]}
CREATE_TOPICS (19) {topics: [{name, num_partitions (-1 = broker default),
                    replication_factor (-1 = default), configs: {str: str}}],
                    timeout_ms, validate_only: bool}
                   -> {topics: [{name, error_code, error_message}]}
DELETE_TOPICS (20) {topics: [name], timeout_ms}
                   -> {topics: [{name, error_code, error_message}]}
INIT_PRODUCER_ID (22) {transactional_id: nil, producer_id: -1, producer_epoch: -1}
                   -> {producer_id, producer_epoch}
                   An existing (producer_id, producer_epoch) asks for an epoch bump.
DESCRIBE_CONFIGS (32) {topics: [name]}
                   -> {topics: [{name, error_code, error_message,
                       configs: [{name, value, is_default, read_only, doc}]}]}
ALTER_CONFIGS (33) {topics: [{name, set: {str: str}, delete: [str]}], validate_only}
                   -> {topics: [{name, error_code, error_message}]}
                   (incremental, as Kafka's IncrementalAlterConfigs)

Consumer groups (DESIGN §7; the membership api is KIP-848's, with topic names):

FIND_COORDINATOR (10) {key: group_id, key_type: 0}
                   -> {error_code, error_message, node_id, host, port}
                   The coordinator of group g leads partition
                   broker.groups.group_partition(g, N) of ``__consumer_offsets``
                   (Kafka's abs(javaHashCode(g)) % N).
OFFSET_COMMIT (8)  {group_id, member_id ("" = not a member: only allowed while
                    the group has no members, e.g. admin resets or manual
                    assignment), member_epoch (-1 with member_id ""),
                    topics: [{topic, partitions: [{partition, offset,
                    leader_epoch (-1), metadata: str}]}]}
                   -> {topics: [{topic, partitions: [{partition, error_code,
                       error_message}]}]}
                   Acknowledged only once the offset records are durable in
                   ``__consumer_offsets`` (acks=all semantics).
OFFSET_FETCH (9)   {group_id, topics: [{topic, partitions: [int]}] | nil (all),
                    member_id ("" = any), member_epoch (-1)}
                   -> {error_code, error_message, topics: [{topic, partitions:
                       [{partition, offset (-1 = none), leader_epoch,
                       metadata, error_code}]}]}
LIST_GROUPS (16)   {states_filter: [str]} -> {error_code, groups: [{group_id,
                    group_state, protocol_type: "consumer"}]}
DELETE_GROUPS (42) {groups: [group_id]}
                   -> {groups: [{group_id, error_code, error_message}]}
                   NON_EMPTY_GROUP while it has members.
CONSUMER_GROUP_HEARTBEAT (68)
                   {group_id, member_id ("" to join: the coordinator assigns
                    one), member_epoch (0 = join, -1 = leave, -2 = static
                    member leaving temporarily), instance_id (str | nil),
                    rack_id, client_id (optional), rebalance_timeout_ms
                    (-1 = unchanged), subscribed_topic_names ([str] | nil = unchanged),
                    subscribed_topic_regex (str | nil = unchanged, "" = none),
                    server_assignor ("uniform" | "range" | nil),
                    topic_partitions ([{topic, partitions: [int]}] owned now |
                    nil = unchanged)}
                   -> {error_code, error_message, member_id, member_epoch,
                       heartbeat_interval_ms,
                       assignment ({topic_partitions: [...]} | nil = unchanged)}
                   A partition is given to a member only after its previous
                   owner has reported it revoked (in topic_partitions).
CONSUMER_GROUP_DESCRIBE (69) {group_ids: [str]}
                   -> {groups: [{group_id, error_code, error_message,
                       group_state ("empty" | "assigning" | "reconciling" |
                       "stable" | "dead"), group_epoch, assignment_epoch,
                       assignor_name, members: [{member_id, instance_id,
                       rack_id, client_id, client_host, member_epoch, state,
                       subscribed_topic_names, subscribed_topic_regex,
                       assignment: [{topic, partitions}],
                       pending_revocation: [{topic, partitions}],
                       target_assignment: [{topic, partitions}]}]}]}

Replication (DESIGN §8; see broker/replication and docs/operations.md):

OFFSET_FOR_LEADER_EPOCH (23)
                   {replica_id, topics: [{topic, partitions: [{partition,
                    current_leader_epoch (-1 = unchecked), leader_epoch}]}]}
                   -> {topics: [{topic, partitions: [{partition, error_code,
                       error_message, leader_epoch, end_offset}]}]}
                   The largest epoch <= leader_epoch in the leader's log and
                   the offset where it ends (KIP-101/279); a follower truncates
                   its log there. Answered by the leader only.
FETCH with replica_id >= 0 is a follower's: it reads up to the log end, and its
                   fetch_offset tells the leader the follower's log end.
ELECT_LEADERS (43) {election_type: 0 (preferred), topic_partitions:
                    [{topic, partitions: [int]}] | nil (all), timeout_ms}
                   -> {topics: [{topic, partitions: [{partition, error_code,
                       error_message}]}]}
                   ELECTION_NOT_NEEDED when the preferred replica leads already,
                   PREFERRED_LEADER_NOT_AVAILABLE when it is dead or out of sync.
ALTER_PARTITION_REASSIGNMENTS (45)
                   {timeout_ms, topics: [{topic, partitions: [{partition,
                    replicas: [int]}]}]}
                   -> {topics: [{topic, partitions: [{partition, error_code,
                       error_message}]}]}
                   Answered when the move is complete (REQUEST_TIMED_OUT after
                   timeout_ms; it still completes).
"""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar

from client.wire import ErrorTable, ServerError


class ApiKey(IntEnum):
    PRODUCE = 0
    FETCH = 1
    LIST_OFFSETS = 2
    METADATA = 3
    API_VERSIONS = 18
    CREATE_TOPICS = 19
    DELETE_TOPICS = 20
    INIT_PRODUCER_ID = 22
    DESCRIBE_CONFIGS = 32
    ALTER_CONFIGS = 33
    OFFSET_COMMIT = 8
    OFFSET_FETCH = 9
    FIND_COORDINATOR = 10
    LIST_GROUPS = 16
    DELETE_GROUPS = 42
    CONSUMER_GROUP_HEARTBEAT = 68
    CONSUMER_GROUP_DESCRIBE = 69
    OFFSET_FOR_LEADER_EPOCH = 23
    ELECT_LEADERS = 43
    ALTER_PARTITION_REASSIGNMENTS = 45


# Highest version of each api this code speaks (the broker must route every one).
API_VERSIONS: dict[int, int] = {
    int(api): 0
    for api in (
        ApiKey.PRODUCE,
        ApiKey.FETCH,
        ApiKey.LIST_OFFSETS,
        ApiKey.METADATA,
        ApiKey.API_VERSIONS,
        ApiKey.CREATE_TOPICS,
        ApiKey.DELETE_TOPICS,
        ApiKey.INIT_PRODUCER_ID,
        ApiKey.DESCRIBE_CONFIGS,
        ApiKey.ALTER_CONFIGS,
        ApiKey.OFFSET_COMMIT,
        ApiKey.OFFSET_FETCH,
        ApiKey.FIND_COORDINATOR,
        ApiKey.LIST_GROUPS,
        ApiKey.DELETE_GROUPS,
        ApiKey.CONSUMER_GROUP_HEARTBEAT,
        ApiKey.CONSUMER_GROUP_DESCRIBE,
        ApiKey.OFFSET_FOR_LEADER_EPOCH,
        ApiKey.ELECT_LEADERS,
        ApiKey.ALTER_PARTITION_REASSIGNMENTS,
    )
}

EARLIEST_TIMESTAMP = -2
LATEST_TIMESTAMP = -1
CONSUMER_REPLICA_ID = -1
CONSUMER_OFFSETS_TOPIC = "__consumer_offsets"

ERRORS = ErrorTable("broker")


class BrokerError(ServerError):
    """Base of the broker's own error codes (100 + Kafka's code)."""

    kafka_code: ClassVar[int] = -1


@ERRORS.register
class OffsetOutOfRangeError(BrokerError):
    """The offset is below the log start or above the log end."""

    code = 101
    kafka_code = 1
    name = "OFFSET_OUT_OF_RANGE"


@ERRORS.register
class CorruptMessageError(BrokerError):
    """A batch failed its CRC or header validation."""

    code = 102
    kafka_code = 2
    name = "CORRUPT_MESSAGE"


@ERRORS.register
class UnknownTopicOrPartitionError(BrokerError):
    """No such topic or partition on this broker."""

    code = 103
    kafka_code = 3
    name = "UNKNOWN_TOPIC_OR_PARTITION"
    retriable = True


@ERRORS.register
class LeaderNotAvailableError(BrokerError):
    """The partition has no leader right now (election under way)."""

    code = 105
    kafka_code = 5
    name = "LEADER_NOT_AVAILABLE"
    retriable = True


@ERRORS.register
class NotLeaderOrFollowerError(BrokerError):
    """This broker does not lead the partition; refresh metadata."""

    code = 106
    kafka_code = 6
    name = "NOT_LEADER_OR_FOLLOWER"
    retriable = True


@ERRORS.register
class MessageTooLargeError(BrokerError):
    """A batch larger than the topic's max.message.bytes."""

    code = 110
    kafka_code = 10
    name = "MESSAGE_TOO_LARGE"


@ERRORS.register
class InvalidTopicError(BrokerError):
    """A topic name that breaks the naming rules."""

    code = 117
    kafka_code = 17
    name = "INVALID_TOPIC_EXCEPTION"


@ERRORS.register
class RecordListTooLargeError(BrokerError):
    """A produce request larger than the broker accepts."""

    code = 118
    kafka_code = 18
    name = "RECORD_LIST_TOO_LARGE"


@ERRORS.register
class NotEnoughReplicasError(BrokerError):
    """The ISR is smaller than min.insync.replicas."""

    code = 119
    kafka_code = 19
    name = "NOT_ENOUGH_REPLICAS"
    retriable = True


@ERRORS.register
class NotEnoughReplicasAfterAppendError(BrokerError):
    """Written to the leader, but the ISR shrank below min.insync.replicas."""

    code = 120
    kafka_code = 20
    name = "NOT_ENOUGH_REPLICAS_AFTER_APPEND"
    retriable = True


@ERRORS.register
class InvalidRequiredAcksError(BrokerError):
    """acks must be 0, 1 or -1."""

    code = 121
    kafka_code = 21
    name = "INVALID_REQUIRED_ACKS"


@ERRORS.register
class InvalidTimestampError(BrokerError):
    """A timestamp out of range."""

    code = 132
    kafka_code = 32
    name = "INVALID_TIMESTAMP"


@ERRORS.register
class TopicAlreadyExistsError(BrokerError):
    """The topic exists already."""

    code = 136
    kafka_code = 36
    name = "TOPIC_ALREADY_EXISTS"


@ERRORS.register
class InvalidPartitionsError(BrokerError):
    """A bad partition count."""

    code = 137
    kafka_code = 37
    name = "INVALID_PARTITIONS"


@ERRORS.register
class InvalidReplicationFactorError(BrokerError):
    """A bad replication factor."""

    code = 138
    kafka_code = 38
    name = "INVALID_REPLICATION_FACTOR"


@ERRORS.register
class NotControllerError(BrokerError):
    """This broker is not the controller."""

    code = 141
    kafka_code = 41
    name = "NOT_CONTROLLER"
    retriable = True


@ERRORS.register
class InvalidConfigError(BrokerError):
    """An unknown or invalid config value."""

    code = 140
    kafka_code = 40
    name = "INVALID_CONFIG"


@ERRORS.register
class OutOfOrderSequenceError(BrokerError):
    """An idempotent producer's batch skipped a sequence number."""

    code = 145
    kafka_code = 45
    name = "OUT_OF_ORDER_SEQUENCE_NUMBER"


@ERRORS.register
class DuplicateSequenceError(BrokerError):
    """A duplicate batch older than the five the broker remembers."""

    code = 146
    kafka_code = 46
    name = "DUPLICATE_SEQUENCE_NUMBER"


@ERRORS.register
class InvalidProducerEpochError(BrokerError):
    """A producer epoch older than the current one (a zombie)."""

    code = 147
    kafka_code = 47
    name = "INVALID_PRODUCER_EPOCH"


@ERRORS.register
class KafkaStorageError(BrokerError):
    """The broker's disk failed."""

    code = 156
    kafka_code = 56
    name = "KAFKA_STORAGE_ERROR"
    retriable = True


@ERRORS.register
class UnknownProducerIdError(BrokerError):
    """The broker has no state for this producer id."""

    code = 159
    kafka_code = 59
    name = "UNKNOWN_PRODUCER_ID"


@ERRORS.register
class FencedLeaderEpochError(BrokerError):
    """The request's leader epoch is older than the broker's."""

    code = 174
    kafka_code = 74
    name = "FENCED_LEADER_EPOCH"
    retriable = True


@ERRORS.register
class UnknownLeaderEpochError(BrokerError):
    """The request's leader epoch is newer than the broker's."""

    code = 175
    kafka_code = 75
    name = "UNKNOWN_LEADER_EPOCH"
    retriable = True


@ERRORS.register
class InvalidReplicaAssignmentError(BrokerError):
    """A replica list that is empty, repeats a broker or names an unknown one."""

    code = 139
    kafka_code = 39
    name = "INVALID_REPLICA_ASSIGNMENT"


@ERRORS.register
class ReassignmentInProgressError(BrokerError):
    """The partition is being reassigned already."""

    code = 160
    kafka_code = 60
    name = "REASSIGNMENT_IN_PROGRESS"


@ERRORS.register
class PreferredLeaderNotAvailableError(BrokerError):
    """The preferred replica is not alive and in sync."""

    code = 180
    kafka_code = 80
    name = "PREFERRED_LEADER_NOT_AVAILABLE"
    retriable = True


@ERRORS.register
class ElectionNotNeededError(BrokerError):
    """The preferred replica leads already."""

    code = 184
    kafka_code = 84
    name = "ELECTION_NOT_NEEDED"


@ERRORS.register
class UnsupportedCompressionTypeError(BrokerError):
    """The broker cannot read this compression codec."""

    code = 176
    kafka_code = 76
    name = "UNSUPPORTED_COMPRESSION_TYPE"


@ERRORS.register
class OffsetMetadataTooLargeError(BrokerError):
    """A commit's metadata string is longer than the broker allows."""

    code = 112
    kafka_code = 12
    name = "OFFSET_METADATA_TOO_LARGE"


@ERRORS.register
class CoordinatorLoadInProgressError(BrokerError):
    """The group coordinator is still replaying its partition."""

    code = 114
    kafka_code = 14
    name = "COORDINATOR_LOAD_IN_PROGRESS"
    retriable = True


@ERRORS.register
class CoordinatorNotAvailableError(BrokerError):
    """The group coordinator's partition has no leader right now."""

    code = 115
    kafka_code = 15
    name = "COORDINATOR_NOT_AVAILABLE"
    retriable = True


@ERRORS.register
class NotCoordinatorError(BrokerError):
    """This broker is not the group's coordinator; find it again."""

    code = 116
    kafka_code = 16
    name = "NOT_COORDINATOR"
    retriable = True


@ERRORS.register
class IllegalGenerationError(BrokerError):
    """A commit for a generation the group has left behind."""

    code = 122
    kafka_code = 22
    name = "ILLEGAL_GENERATION"


@ERRORS.register
class InvalidGroupIdError(BrokerError):
    """An empty or malformed group id."""

    code = 124
    kafka_code = 24
    name = "INVALID_GROUP_ID"


@ERRORS.register
class UnknownMemberIdError(BrokerError):
    """The member is not (or no longer) in the group; rejoin."""

    code = 125
    kafka_code = 25
    name = "UNKNOWN_MEMBER_ID"


@ERRORS.register
class NonEmptyGroupError(BrokerError):
    """The group still has members."""

    code = 168
    kafka_code = 68
    name = "NON_EMPTY_GROUP"


@ERRORS.register
class GroupIdNotFoundError(BrokerError):
    """No such group."""

    code = 169
    kafka_code = 69
    name = "GROUP_ID_NOT_FOUND"


@ERRORS.register
class GroupMaxSizeReachedError(BrokerError):
    """The group has the maximum number of members."""

    code = 181
    kafka_code = 81
    name = "GROUP_MAX_SIZE_REACHED"


@ERRORS.register
class FencedInstanceIdError(BrokerError):
    """Another member took over this static instance id."""

    code = 182
    kafka_code = 82
    name = "FENCED_INSTANCE_ID"


@ERRORS.register
class FencedMemberEpochError(BrokerError):
    """The member epoch is stale: the member was fenced; rejoin."""

    code = 210
    kafka_code = 110
    name = "FENCED_MEMBER_EPOCH"


@ERRORS.register
class UnreleasedInstanceIdError(BrokerError):
    """The static instance id is still held by a member that has not left."""

    code = 211
    kafka_code = 111
    name = "UNRELEASED_INSTANCE_ID"
    retriable = True


@ERRORS.register
class UnsupportedAssignorError(BrokerError):
    """The requested server-side assignor does not exist."""

    code = 212
    kafka_code = 112
    name = "UNSUPPORTED_ASSIGNOR"


@ERRORS.register
class StaleMemberEpochError(BrokerError):
    """A commit with a member epoch older than the member's current one."""

    code = 213
    kafka_code = 113
    name = "STALE_MEMBER_EPOCH"
