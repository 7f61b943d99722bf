"""The official P4Runtime Python bindings (PyPI `p4runtime`) as the other end of the wire
for tests/python_wire.rs. Modes:

  decode TYPE FILE       parse FILE (binary) as p4.v1.TYPE; print it as JSON, then a line
                         with the hex of its re-serialization
  samples                print JSON {name: hex} of messages built here
  p4info-text FILE       parse FILE as a text-format P4Info; print the hex of its binary form
  descriptors FILE       compare a FileDescriptorSet (ours, from protoc) with the package's
                         descriptors field by field; print SAME or the differences
"""
import json
import os
import sys

os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")

from google.protobuf import descriptor_pb2, json_format, text_format  # noqa: E402
from google.rpc import code_pb2, status_pb2  # noqa: E402
from p4.config.v1 import p4info_pb2, p4types_pb2  # noqa: E402
from p4.v1 import p4data_pb2, p4runtime_pb2  # noqa: E402


def decode(type_name, path):
    msg = getattr(p4runtime_pb2, type_name)()
    with open(path, "rb") as f:
        msg.ParseFromString(f.read())
    print(json_format.MessageToJson(msg, preserving_proto_field_name=True, indent=None))
    print(msg.SerializeToString(deterministic=True).hex())


def samples():
    out = {}

    rr = p4runtime_pb2.ReadResponse()
    e = rr.entities.add().table_entry
    e.table_id = 0x02000001
    e.priority = 100
    e.metadata = b"\xca\xfe"
    e.is_const = True
    m = e.match.add()
    m.field_id = 1
    m.exact.value = b"\x00\x2a"
    m = e.match.add()
    m.field_id = 2
    m.ternary.value = b"\x01\x00\x00\x00\x00\x00"
    m.ternary.mask = b"\x01\x00\x00\x00\x00\x00"
    m = e.match.add()
    m.field_id = 3
    m.lpm.value = b"\x0a\x00\x01\x00"
    m.lpm.prefix_len = 24
    m = e.match.add()
    m.field_id = 4
    m.range.low = b"\x10"
    m.range.high = b"\x20"
    m = e.match.add()
    m.field_id = 5
    m.optional.value = b"\x07"
    a = e.action.action
    a.action_id = 0x01000002
    p = a.params.add()
    p.param_id = 1
    p.value = b"\xfa\x16\x3e\x00\x00\x01"
    p = a.params.add()
    p.param_id = 2
    p.value = b"\x05"
    e.counter_data.byte_count = 1500
    e.counter_data.packet_count = 3
    dc = rr.entities.add().direct_counter_entry
    dc.table_entry.table_id = 0x02000001
    dc.data.packet_count = 9
    mg = rr.entities.add().packet_replication_engine_entry.multicast_group_entry
    mg.multicast_group_id = 7
    r = mg.replicas.add()
    r.port = b"\x02"
    r.instance = 1
    out["ReadResponse"] = rr.SerializeToString().hex()

    sm = p4runtime_pb2.StreamMessageResponse()
    sm.packet.payload = b"\xff\xff\xff\xff\xff\xff\x00\x01"
    for mid, val in [(1, b"\x00\x03"), (2, b"\x01"), (3, b"\x00\x05"), (4, b"\x00\x00\x02"), (5, b"\x00\x00")]:
        md = sm.packet.metadata.add()
        md.metadata_id = mid
        md.value = val
    out["StreamMessageResponse.packet"] = sm.SerializeToString().hex()

    arb = p4runtime_pb2.StreamMessageResponse()
    arb.arbitration.device_id = 1
    arb.arbitration.election_id.high = 0
    arb.arbitration.election_id.low = 10
    arb.arbitration.role.name = "wyvern"
    arb.arbitration.status.code = code_pb2.ALREADY_EXISTS
    arb.arbitration.status.message = "not primary"
    out["StreamMessageResponse.arbitration"] = arb.SerializeToString().hex()

    st = status_pb2.Status(code=code_pb2.UNKNOWN, message="batch failed")
    err = p4runtime_pb2.Error(canonical_code=code_pb2.ALREADY_EXISTS, message="entry exists")
    st.details.add().Pack(err)
    st.details.add().Pack(p4runtime_pb2.Error(canonical_code=code_pb2.OK))
    out["Status"] = st.SerializeToString().hex()

    info = p4info_pb2.P4Info()
    info.pkg_info.arch = "v1model"
    t = info.tables.add()
    t.preamble.id = 0x02000001
    t.preamble.name = "MyIngress.l2_lookup"
    t.preamble.alias = "l2_lookup"
    mf = t.match_fields.add()
    mf.id = 1
    mf.name = "meta.network"
    mf.bitwidth = 24
    mf.match_type = p4info_pb2.MatchField.EXACT
    mf = t.match_fields.add()
    mf.id = 2
    mf.name = "hdr.ethernet.dstAddr"
    mf.bitwidth = 48
    mf.match_type = p4info_pb2.MatchField.TERNARY
    t.action_refs.add().id = 0x01000001
    ref = t.action_refs.add()
    ref.id = 0x01000002
    ref.scope = p4info_pb2.ActionRef.DEFAULT_ONLY
    t.const_default_action_id = 0x01000002
    t.direct_resource_ids.append(0x13000001)
    t.size = 65536
    act = info.actions.add()
    act.preamble.id = 0x01000001
    act.preamble.name = "MyIngress.set_outport"
    prm = act.params.add()
    prm.id = 1
    prm.name = "outport"
    prm.bitwidth = 16
    d = info.direct_counters.add()
    d.preamble.id = 0x13000001
    d.spec.unit = p4info_pb2.CounterSpec.BOTH
    d.direct_table_id = 0x02000001
    cpm = info.controller_packet_metadata.add()
    cpm.preamble.name = "packet_in"
    md = cpm.metadata.add()
    md.id = 1
    md.name = "ingress_port"
    md.bitwidth = 16
    info.type_info.error.members.extend(["NoError", "PacketTooShort"])
    out["P4Info"] = info.SerializeToString().hex()

    print(json.dumps(out))


def p4info_text(path):
    info = p4info_pb2.P4Info()
    with open(path) as f:
        text_format.Parse(f.read(), info)
    print(info.SerializeToString(deterministic=True).hex())


def compact(fd):
    T = {v: k for k, v in descriptor_pb2.FieldDescriptorProto.Type.items()}
    L = {v: k for k, v in descriptor_pb2.FieldDescriptorProto.Label.items()}
    out = ["file %s package=%s deps=%s" % (fd.name, fd.package, sorted(fd.dependency))]

    def enum(e, pre):
        out.append("enum %s%s %s" % (pre, e.name, " ".join("%s=%d" % (v.name, v.number) for v in e.value)))

    def msg(m, pre):
        out.append("message %s%s" % (pre, m.name))
        for f in sorted(m.field, key=lambda f: f.number):
            oneof = m.oneof_decl[f.oneof_index].name if f.HasField("oneof_index") else ""
            out.append("  %d %s %s %s %s oneof=%s optional=%s" % (
                f.number, f.name, L[f.label], T[f.type], f.type_name, oneof, f.proto3_optional))
        for e in m.enum_type:
            enum(e, pre + m.name + ".")
        for n in m.nested_type:
            msg(n, pre + m.name + ".")

    for m in fd.message_type:
        msg(m, "")
    for e in fd.enum_type:
        enum(e, "")
    for s in fd.service:
        for meth in s.method:
            out.append("rpc %s.%s(%s%s) -> %s%s" % (
                s.name, meth.name, "stream " if meth.client_streaming else "", meth.input_type,
                "stream " if meth.server_streaming else "", meth.output_type))
    return out


def descriptors(path):
    ours = descriptor_pb2.FileDescriptorSet()
    with open(path, "rb") as f:
        ours.ParseFromString(f.read())
    mine = {fd.name: compact(fd) for fd in ours.file if not fd.name.startswith("google/protobuf/")}
    official = {}
    for mod in [p4runtime_pb2, p4data_pb2, p4info_pb2, p4types_pb2, status_pb2, code_pb2]:
        fd = descriptor_pb2.FileDescriptorProto()
        mod.DESCRIPTOR.CopyToProto(fd)
        official[fd.name] = compact(fd)
    diffs = []
    for name in sorted(set(mine) | set(official)):
        a, b = mine.get(name, ["<missing>"]), official.get(name, ["<missing>"])
        for line in sorted(set(a) ^ set(b)):
            diffs.append("%s %s: %s" % ("ours" if line in a else "official", name, line))
    print("SAME" if not diffs else "\n".join(diffs))


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "decode":
        decode(sys.argv[2], sys.argv[3])
    elif mode == "samples":
        samples()
    elif mode == "p4info-text":
        p4info_text(sys.argv[2])
    elif mode == "descriptors":
        descriptors(sys.argv[2])
    else:
        sys.exit("unknown mode " + mode)
