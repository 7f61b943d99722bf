"""p4runtime-shell (PyPI) as a backup controller of wyvern-p4d: it fetches the P4Info from
the target, reads every table's entries and prints them by name as one JSON line.

usage: shell_peer.py ADDR ELECTION_ID_LOW
"""
import json
import sys

import p4runtime_sh.shell as sh

TABLES = [
    "MyIngress.classify",
    "MyIngress.port_security",
    "MyIngress.dispatch",
    "MyIngress.arp_responder",
    "MyIngress.dhcp",
    "MyIngress.l2_lookup",
    "MyIngress.l3_lookup",
    "MyIngress.egress",
]


def hexs(b):
    return "0x" + b.hex()


def field(mf):
    kind = mf.WhichOneof("field_match_type")
    m = getattr(mf, kind)
    if kind == "ternary":
        return hexs(m.value) + "&&&" + hexs(m.mask)
    if kind == "lpm":
        return hexs(m.value) + "/" + str(m.prefix_len)
    return hexs(m.value)


def main():
    addr, election_low = sys.argv[1], int(sys.argv[2])
    sh.setup(device_id=1, grpc_addr=addr, election_id=(0, election_low), verbose=False)
    out = {"api_version": sh.client.api_version(), "tables": {}}
    for t in TABLES:
        entries = []
        for te in sh.TableEntry(t).read():
            entries.append({
                "match": {name: field(mf) for name, mf in te.match._mk.items()},
                "priority": te.priority,
                "action": te.action.action_name if te.action is not None else None,
                "params": {n: hexs(p.value) for n, p in te.action._param_values.items()}
                if te.action is not None else {},
            })
        out["tables"][t] = entries
    # A write from a backup must be refused.
    try:
        te = sh.TableEntry("MyIngress.egress")(action="MyIngress.drop")
        te.match["meta.outport"] = "0x7ffe"
        te.insert()
        out["backup_write"] = "accepted"
    except Exception as e:  # grpc.RpcError for a refused RPC, P4RuntimeWriteException per update
        code = getattr(e, "code", None)
        out["backup_write"] = code().name if callable(code) else str(e)
    sh.teardown()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
