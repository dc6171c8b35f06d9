"""Is this mosquitto.db one that mosquitto 2.0 will load, and is it one its writer could have written?

Why our own validator: mosquitto has no check mode, and what it does with a damaged file is either exit 1 at start
(the crash loop of a corrupt db: mid-chunk truncation, garbage) or start silently with part of the data (a file cut
inside a chunk header). A backup must never be a file like that, and the init container must know before mosquitto
starts. The checks are structural: every byte of the file is accounted for by a chunk whose declared length matches
what mosquitto's writer puts there, and the fixed fields mosquitto's reader trusts are in range. No allocation
follows a declared length: a chunk claiming 4 GiB in a 700-byte file is refused by arithmetic.

The format (mosquitto 2.0.0 to 2.0.20 write the same one: MOSQ_DB_VERSION 6 in every tag, and `git diff v2.0.11
v2.0.20` of the persist files changes no layout). Sources are eclipse/mosquitto at v2.0.11 (the version on this
machine and in the image) unless marked; src/persist.h is line-identical in both tags:
  header   15-byte magic (src/persist_read.c:44), a uint32 "crc" that is written as 0 and never checked
           (persist_write.c:366, persist_read.c:446), the db version as big-endian uint32 (persist_write.c:367,
           persist_read.c:447-448; persist.h:24 MOSQ_DB_VERSION 6; the reader also takes 2..5, :452-464)
  chunks   struct PF_header {uint32 chunk; uint32 length;} big-endian (persist.h:52-55, persist_read_v5.c:43-55),
           then `length` bytes. Types 1..6 (persist.h:28-33).
  order    cfg, then every message store, then each client followed by its client messages, then subscriptions,
           then retained references (persist_write.c:369-383; the same calls in every 2.0 tag; 1.6 interleaved
           the last two, which is allowed). A reader meeting a
           reference before what it refers to drops it as "probably expired" (persist_read.c:119-123, 366-374),
           so an out-of-order file loads wrong without an error: it is not a file mosquitto wrote.
  sizes    the PF_* structs are written raw (persist.h:39-50), so their sizes are the C layout on a 64-bit target
           (int64 aligned to 8: x86_64 and arm64, the image's platforms): PF_cfg 16, PF_client 24 (v5: 16,
           PF_client_v5), PF_client_msg 16, PF_msg_store 32, PF_sub 12, PF_retain 8 (persist.h:58-145).
           Integer fields are big-endian except dbid_t store ids, last_db_id and the int64 times, which are
           written in host order (persist_write_v5.c:64-68, 101-102, 152-157 convert only the others).
The end: there is no trailer and no checksum (crc is always 0), so a file cut exactly between two chunks is a
well-formed smaller database; mosquitto loads it without a word, and so must we (measured with 2.0.11:
tests/test_backup_tool.py, test_what_mosquitto_does_at_start_with). That is why the backups carry their own SHA-256.
"""

import struct
from dataclasses import dataclass, field
from typing import Optional

MAGIC = bytes([0x00, 0xB5, 0x00]) + b"mosquitto db"
"""src/persist_read.c:44 (v2.0.11 and v2.0.20)."""
HEADER_SIZE = len(MAGIC) + 4 + 4
"""magic, crc (uint32, always 0: persist_write.c:366), db version (persist_write.c:367)."""
DB_VERSION = 6
"""MOSQ_DB_VERSION, src/persist.h:24, the only version mosquitto 2.0 writes (persist_write.c:306)."""
SUPPORTED_VERSIONS = (5, 6)
"""The v5/v6 chunk readers (persist_read_v5.c); 5 differs only in the client chunk (persist_read_v5.c:73-81).
Versions 2-4 (mosquitto 1.4 and older) use other readers (persist_read_v234.c): not a backup of a 2.0 broker."""

CFG, MSG_STORE, CLIENT_MSG, RETAIN, SUB, CLIENT = 1, 2, 3, 4, 5, 6
"""DB_CHUNK_* (src/persist.h:28-33)."""
CHUNK_NAMES = {CFG: "cfg", MSG_STORE: "msg_store", CLIENT_MSG: "client_msg", RETAIN: "retain", SUB: "sub",
               CLIENT: "client"}
CHUNK_HEADER = struct.Struct(">II")
"""struct PF_header (persist.h:52-55), read with ntohl (persist_read_v5.c:51-52)."""

# Fixed parts (persist.h), on a 64-bit target:
PF_CFG = 16          # uint64 last_db_id, uint8 shutdown, uint8 dbid_size, 6 bytes padding (persist.h:58-62)
PF_CLIENT = 24       # int64, uint32, 4 x uint16, 4 bytes tail padding (persist.h:70-81: "tail: 4 byte padding")
PF_CLIENT_V5 = 16    # persist.h:64-69
PF_CLIENT_MSG = 16   # dbid_t, 2 x uint16, 4 x uint8 (persist.h:89-97)
PF_MSG_STORE = 32    # dbid_t, int64, uint32, 5 x uint16, 2 x uint8 (persist.h:105-116)
PF_SUB = 12          # uint32, 2 x uint16, 2 x uint8, 2 bytes padding (persist.h:126-132)
PF_RETAIN = 8        # dbid_t (persist.h:140-142)
DBID_SIZE = 8        # sizeof(dbid_t): the reader refuses any other (persist_read.c:481-486)
MQTT_MAX_PAYLOAD = 268435455
"""include/mqtt_protocol.h:280; a larger payloadlen is refused (persist_read_v5.c:160-162)."""

_MSG_STORE = struct.Struct(">8s8sIHHHHHBB")
_CLIENT_MSG = struct.Struct(">8sHHBBBB")
_SUB = struct.Struct(">IHHBB2x")


class CorruptDatabase(ValueError):
    """The file is not a mosquitto.db that mosquitto 2.0 wrote; the message is one line: offset and what was wrong."""

    def __init__(self, reason: str, offset: Optional[int] = None):
        self.reason = reason
        self.offset = offset
        super().__init__(reason if offset is None else f"at byte {offset}: {reason}")


@dataclass(frozen=True)
class DbSummary:
    """What a valid file holds. `messages` counts stored messages (one per payload, shared by every queue holding
    it), `retained` the retained references, `client_messages` the per-client queue entries (queued or in flight),
    `clients` the persistent sessions, `subscriptions` their subscriptions."""

    format_version: int
    chunks: dict[str, int]
    retained: int
    messages: int
    clients: int
    subscriptions: int
    client_messages: int = 0
    size: int = 0
    shutdown: bool = False
    """The cfg chunk's flag: True when mosquitto wrote the file while exiting (persist_write.c:371, mosquitto.c:575)."""
    dangling: int = 0
    """Retained or queued references to a stored message the file does not hold. mosquitto skips them as expired
    (persist_read.c:119-123, 372-374), so they are counted, not refused."""
    client_ids: frozenset = field(default_factory=frozenset)

    @property
    def empty(self) -> bool:
        """Nothing to lose: no message, session or subscription (what a fresh broker saves)."""
        return not (self.messages or self.clients or self.subscriptions or self.retained or self.client_messages)


# the writer's order (persist_write.c:369-383): a chunk's rank may not go below the previous chunk's. Subscriptions
# and retained references share a rank: mosquitto 1.6 wrote them interleaved, node by node, in the same format
# version 6 (v1.6.15 src/persist_write.c:255-267, 353), and a volume upgraded from 1.6 still holds such a file until
# mosquitto 2.0 first saves it.
_RANK = {CFG: 0, MSG_STORE: 1, CLIENT: 2, CLIENT_MSG: 2, SUB: 3, RETAIN: 3}

# MQTT 5 properties a PUBLISH may carry (lib/property_mosq.c:445-536, mosquitto_property_check_command with
# CMD_PUBLISH, the command the reader checks with: persist_read_v5.c:135, 221) -> their encoding
# (property__read, lib/property_mosq.c:58-144)
_PUBLISH_PROPERTIES = {1: "byte", 2: "uint32", 3: "string", 8: "string", 9: "binary", 11: "varint", 35: "uint16",
                       38: "pair"}
_USER_PROPERTY = 38


def _varint(data: memoryview, pos: int, end: int, what: str) -> tuple[int, int]:
    """MQTT variable byte integer: at most 4 bytes, no overlong form (lib/packet_datatypes.c:204-234)."""
    value, mult = 0, 1
    for i in range(4):
        if pos + i >= end:
            raise CorruptDatabase(f"{what}: variable-length integer runs past its block", pos)
        byte = data[pos + i]
        value += (byte & 127) * mult
        mult *= 128
        if not byte & 128:
            if i > 0 and byte == 0:
                raise CorruptDatabase(f"{what}: overlong variable-length integer", pos)
            return value, pos + i + 1
    raise CorruptDatabase(f"{what}: variable-length integer longer than 4 bytes", pos)


def _utf8_ok(raw: bytes) -> bool:
    """mosquitto_validate_utf8 (lib/utf8_mosq.c:24-110): strict UTF-8, no surrogates (Python's codec refuses them
    too), no U+0000, no control characters, no non-characters."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    for ch in text:
        cp = ord(ch)
        if cp <= 0x1F or 0x7F <= cp <= 0x9F or 0xFDD0 <= cp <= 0xFDEF or (cp & 0xFFFF) in (0xFFFE, 0xFFFF):
            return False
    return True


def _properties(data: memoryview, start: int, end: int, what: str) -> None:
    """The property block in data[start:end] (file offsets) as property__read_all reads it (lib/property_mosq.c:
    150-192): a varint length, then exactly that many bytes of PUBLISH properties, none repeated but user
    properties (:961-970), a topic alias not 0 (:949-954). The reader fails on any of these, and with it the
    broker's start (persist_read.c:490-495)."""
    length, pos = _varint(data, start, end, f"{what} properties")
    if pos + length != end:
        raise CorruptDatabase(f"{what}: property block says {length} bytes, the chunk leaves {end - pos}", pos)
    seen: set[int] = set()
    while pos < end:
        ident, pos = _varint(data, pos, end, f"{what} property id")
        kind = _PUBLISH_PROPERTIES.get(ident)
        if kind is None:
            raise CorruptDatabase(f"{what}: property {ident} is not allowed on a PUBLISH", pos)
        if ident in seen and ident != _USER_PROPERTY:
            raise CorruptDatabase(f"{what}: property {ident} repeated", pos)
        seen.add(ident)
        if kind == "varint":
            _, pos = _varint(data, pos, end, f"{what} property {ident}")
            continue
        if kind in ("byte", "uint16", "uint32"):
            size = {"byte": 1, "uint16": 2, "uint32": 4}[kind]
            if pos + size > end:
                raise CorruptDatabase(f"{what}: property {ident} runs past the chunk", pos)
            if ident == 35 and int.from_bytes(data[pos:pos + 2], "big") == 0:
                raise CorruptDatabase(f"{what}: topic alias 0", pos)
            pos += size
            continue
        for _ in range(2 if kind == "pair" else 1):
            if pos + 2 > end:
                raise CorruptDatabase(f"{what}: property {ident} runs past the chunk", pos)
            slen = int.from_bytes(data[pos:pos + 2], "big")
            if pos + 2 + slen > end:
                raise CorruptDatabase(f"{what}: property {ident} says {slen} bytes, past the chunk", pos)
            if kind != "binary" and slen and not _utf8_ok(bytes(data[pos + 2:pos + 2 + slen])):
                raise CorruptDatabase(f"{what}: property {ident} is not valid UTF-8", pos)
            pos += 2 + slen


def inspect(data: bytes) -> DbSummary:
    """Validate a whole mosquitto.db held in memory; return what it holds or raise CorruptDatabase (one line)."""
    view = memoryview(data)
    size = len(view)
    if size == 0:
        # mosquitto starts empty on it with only a warning (persist_read.c:437-440); its writer never leaves one
        raise CorruptDatabase("empty file (0 bytes); mosquitto writes at least a header and a cfg chunk")
    if size < len(MAGIC) or bytes(view[:len(MAGIC)]) != MAGIC:
        if size < len(MAGIC) and bytes(view[:size]) == MAGIC[:size]:
            raise CorruptDatabase(f"truncated inside the file header ({size} of {HEADER_SIZE} bytes)", size)
        raise CorruptDatabase("not a mosquitto database: the 15-byte magic header is missing", 0)
    if size < HEADER_SIZE:
        raise CorruptDatabase(f"truncated inside the file header ({size} of {HEADER_SIZE} bytes)", size)
    version = int.from_bytes(view[19:23], "big")
    if version not in SUPPORTED_VERSIONS:
        raise CorruptDatabase(f"database format version {version}, expected {DB_VERSION} (mosquitto 2.0)", 19)

    counts = {name: 0 for name in CHUNK_NAMES.values()}
    stores: set[bytes] = set()
    references: list[bytes] = []
    client_ids: set[str] = set()
    current_client: Optional[bytes] = None
    rank = -1
    shutdown = False
    pos = HEADER_SIZE
    while pos < size:
        if size - pos < CHUNK_HEADER.size:
            # mosquitto stops reading here and starts with what it has (persist_read_v5.c:48-49, persist_read.c:467)
            raise CorruptDatabase(f"truncated inside a chunk header ({size - pos} of {CHUNK_HEADER.size} bytes)", pos)
        kind, length = CHUNK_HEADER.unpack_from(view, pos)
        name = CHUNK_NAMES.get(kind)
        if name is None:
            raise CorruptDatabase(f"unknown chunk type {kind} (mosquitto 2.0 writes 1-6)", pos)
        body, end = pos + CHUNK_HEADER.size, pos + CHUNK_HEADER.size + length
        if end > size:
            raise CorruptDatabase(f"{name} chunk declares {length} bytes but only {size - body} remain (truncated)",
                                  pos)
        if rank < 0 and kind != CFG:
            raise CorruptDatabase(f"first chunk is {name}, mosquitto writes cfg first (persist_write.c:373)", pos)
        if kind == CFG and rank >= 0:
            raise CorruptDatabase("a second cfg chunk", pos)
        if _RANK[kind] < rank:
            raise CorruptDatabase(f"{name} chunk after a later section: not the order mosquitto writes", pos)
        rank = _RANK[kind]
        chunk = view[body:end]

        def need(exact: Optional[int], minimum: int = 0) -> None:
            if exact is not None and length != exact:
                raise CorruptDatabase(f"{name} chunk is {length} bytes, mosquitto writes {exact}", pos)
            if length < minimum:
                raise CorruptDatabase(f"{name} chunk is {length} bytes, shorter than its {minimum}-byte fixed part",
                                      pos)

        if kind == CFG:
            need(PF_CFG)  # persist_write_v5.c:46-48; the reader takes sizeof(PF_cfg) whatever the length says
            shutdown, dbid_size = bool(chunk[8]), chunk[9]
            if dbid_size != DBID_SIZE:  # persist_read.c:481-486: the broker refuses to start
                raise CorruptDatabase(f"cfg chunk says dbid size {dbid_size}, mosquitto needs {DBID_SIZE}", pos)
        elif kind == MSG_STORE:
            need(None, PF_MSG_STORE)
            (store_id, _expiry, payloadlen, _mid, source_id_len, source_username_len, topic_len, _port, qos,
             retain) = _MSG_STORE.unpack_from(chunk, 0)
            if payloadlen > MQTT_MAX_PAYLOAD:  # persist_read_v5.c:160-162
                raise CorruptDatabase(f"msg_store payload length {payloadlen} exceeds MQTT's maximum", pos)
            variable = source_id_len + source_username_len + topic_len + payloadlen
            if PF_MSG_STORE + variable > length:  # the reader's `length -=` would wrap (persist_read_v5.c:169)
                raise CorruptDatabase(f"msg_store chunk is {length} bytes but its fields need "
                                      f"{PF_MSG_STORE + variable}", pos)
            if topic_len == 0:  # every stored message has a topic (persist_write.c:137)
                raise CorruptDatabase("msg_store chunk without a topic", pos)
            if qos > 2 or retain > 1:
                raise CorruptDatabase(f"msg_store chunk with qos {qos} retain {retain}", pos)
            if PF_MSG_STORE + variable < length:
                _properties(view, body + PF_MSG_STORE + variable, end, "msg_store")
            stores.add(bytes(store_id))
        elif kind == CLIENT:
            fixed = PF_CLIENT if version == 6 else PF_CLIENT_V5
            need(None, fixed)
            # id_len at 14 in both layouts, username_len at 18 in v6 (persist.h:64-78), big-endian
            # (persist_read_v5.c:75, 85)
            id_len = int.from_bytes(chunk[14:16], "big")
            username_len = int.from_bytes(chunk[18:20], "big") if version == 6 else 0
            need(fixed + id_len + username_len)  # persist_write_v5.c:71; the reader ignores length (:73-101)
            if id_len == 0:  # the writer skips such a client (persist_write.c:184-187); the reader warns
                raise CorruptDatabase("client chunk with an empty client id", pos)
            current_client = bytes(chunk[fixed:fixed + id_len])
            client_ids.add(current_client.decode("utf-8", "replace"))
        elif kind == CLIENT_MSG:
            need(None, PF_CLIENT_MSG)
            store_id, _mid, id_len, qos, state, _retain_dup, direction = _CLIENT_MSG.unpack_from(chunk, 0)
            if PF_CLIENT_MSG + id_len > length:  # persist_read_v5.c:120 would wrap
                raise CorruptDatabase(f"client_msg chunk is {length} bytes but its fields need "
                                      f"{PF_CLIENT_MSG + id_len}", pos)
            owner = bytes(chunk[PF_CLIENT_MSG:PF_CLIENT_MSG + id_len])
            if id_len == 0 or owner != current_client:  # written right after its client (persist_write.c:190-198)
                raise CorruptDatabase("client_msg chunk not preceded by its client's chunk", pos)
            if qos > 2 or direction > 1:
                raise CorruptDatabase(f"client_msg chunk with qos {qos} direction {direction}", pos)
            if PF_CLIENT_MSG + id_len < length:
                _properties(view, body + PF_CLIENT_MSG + id_len, end, "client_msg")
            references.append(bytes(store_id))
        elif kind == SUB:
            need(None, PF_SUB)
            _identifier, id_len, topic_len, qos, _options = _SUB.unpack_from(chunk, 0)
            need(PF_SUB + id_len + topic_len)  # persist_write_v5.c:231; the reader ignores length (:257-271)
            if id_len == 0 or topic_len == 0:  # v2.0.11 asserts on both (persist_read.c:554-555)
                raise CorruptDatabase("sub chunk without a client id or topic filter", pos)
            if qos > 2:
                raise CorruptDatabase(f"sub chunk with qos {qos}", pos)
        elif kind == RETAIN:
            need(PF_RETAIN)  # persist_write_v5.c:208; read as sizeof(struct P_retain) (persist_read_v5.c:245)
            references.append(bytes(chunk[:8]))
        counts[name] += 1
        pos = end
    if rank < 0:
        # mosquitto always writes cfg (persist_write.c:369-375); a file that stops after the header was cut short
        raise CorruptDatabase("no chunks after the file header (truncated: mosquitto writes a cfg chunk)", pos)
    return DbSummary(format_version=version, chunks=counts, retained=counts["retain"], messages=counts["msg_store"],
                     clients=counts["client"], subscriptions=counts["sub"], client_messages=counts["client_msg"],
                     size=size, shutdown=shutdown, dangling=sum(1 for ref in references if ref not in stores),
                     client_ids=frozenset(client_ids))


def inspect_file(path) -> DbSummary:
    """inspect() of a file's bytes (read through one descriptor)."""
    with open(path, "rb") as handle:
        return inspect(handle.read())
