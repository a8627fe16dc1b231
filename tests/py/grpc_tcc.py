"""A TCC global transaction through DTM's gRPC API with stubs grpcio-tools generated from DTM's
proto, written the way DTM's gRPC TCC client works.

usage: grpc_tcc.py DTM_GRPC BUSI

Prepare, then per branch RegisterBranch (Data: confirm/cancel URLs, BusiPayload: the body)
followed by the client's own unary call of the try with the metadata dtm-gid,
dtm-trans_type, dtm-branch_id, dtm-op=try and dtm-dtm; Submit when both tries succeed, Abort
(with the try's error as reason) when one fails. Branches: TransOut and TransIn, with
...Try/...Confirm/...Cancel methods on BUSI (host:port/pkg.Service). Prints one JSON line:
{"gid": ..., "outcome": "submitted" or "aborted: <code>", "payloads": {...: hex}}.
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "grpc_stubs"))

import grpc  # noqa: E402
from google.protobuf import empty_pb2  # noqa: E402

import dtmgimp_pb2  # noqa: E402
import dtmgimp_pb2_grpc  # noqa: E402


def raw(b):
    return b


def main():
    dtm, busi = sys.argv[1], sys.argv[2]
    busi_addr, service = busi.split("/", 1)
    payloads = {"TransOut": b"\x08\x01\x10\x1e\xff", "TransIn": b"\x08\x02\x10\x1e\xfe"}
    with grpc.insecure_channel(dtm) as channel, grpc.insecure_channel(busi_addr) as branches:
        stub = dtmgimp_pb2_grpc.DtmStub(channel)
        gid = stub.NewGid(empty_pb2.Empty(), timeout=30).Gid
        trans = dtmgimp_pb2.DtmRequest(
            Gid=gid,
            TransType="tcc",
            TransOptions=dtmgimp_pb2.DtmTransOptions(RetryInterval=1),
        )
        stub.Prepare(trans, timeout=30)
        outcome = "submitted"
        for n, name in enumerate(["TransOut", "TransIn"], start=1):
            branch_id = "%02d" % n
            body = payloads[name]
            stub.RegisterBranch(
                dtmgimp_pb2.DtmBranchRequest(
                    Gid=gid,
                    TransType="tcc",
                    BranchID=branch_id,
                    Op="try",
                    Data={
                        "confirm": busi + "/" + name + "Confirm",
                        "cancel": busi + "/" + name + "Cancel",
                    },
                    BusiPayload=body,
                ),
                timeout=30,
            )
            call = branches.unary_unary(
                "/" + service + "/" + name + "Try",
                request_serializer=raw,
                response_deserializer=raw,
            )
            metadata = [
                ("dtm-gid", gid),
                ("dtm-trans_type", "tcc"),
                ("dtm-branch_id", branch_id),
                ("dtm-op", "try"),
                ("dtm-dtm", dtm),
            ]
            try:
                call(body, metadata=metadata, timeout=30)
            except grpc.RpcError as e:
                outcome = "aborted: " + e.code().name
                trans.RollbackReason = "try of %s: %s" % (name, e.details())
                stub.Abort(trans, timeout=30)
                break
        else:
            stub.Submit(trans, timeout=30)
    hexed = {k: v.hex() for k, v in payloads.items()}
    print(json.dumps({"gid": gid, "outcome": outcome, "payloads": hexed}))


if __name__ == "__main__":
    main()
