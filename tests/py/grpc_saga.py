"""A saga through DTM's gRPC API with stubs grpcio-tools generated from DTM's proto.

usage: grpc_saga.py DTM_GRPC BUSI

DTM_GRPC is the server's host:port, BUSI the branch service's host:port/pkg.Service. Two steps,
TransOut and TransIn (compensations TransOutRevert, TransInRevert), each with a binary payload
(bytes that are not UTF-8), submitted with WaitResult. Prints one JSON line: {"gid": ...,
"outcome": "SUCCESS" or the gRPC status code name, "payloads": {method: hex}}.
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "grpc_stubs"))

import grpc  # noqa: E402
from google.protobuf import empty_pb2  # noqa: E402

import dtmgimp_pb2  # noqa: E402
import dtmgimp_pb2_grpc  # noqa: E402


def main():
    dtm, busi = sys.argv[1], sys.argv[2]
    out, into = b"\x08\x01\x10\x1e\xff", b"\x08\x02\x10\x1e\xfe"
    with grpc.insecure_channel(dtm) as channel:
        stub = dtmgimp_pb2_grpc.DtmStub(channel)
        gid = stub.NewGid(empty_pb2.Empty(), timeout=30).Gid
        steps = [
            {"action": busi + "/TransOut", "compensate": busi + "/TransOutRevert"},
            {"action": busi + "/TransIn", "compensate": busi + "/TransInRevert"},
        ]
        request = dtmgimp_pb2.DtmRequest(
            Gid=gid,
            TransType="saga",
            TransOptions=dtmgimp_pb2.DtmTransOptions(WaitResult=True, RetryInterval=1),
            Steps=json.dumps(steps),
            BinPayloads=[out, into],
        )
        try:
            stub.Submit(request, timeout=30)
            outcome = "SUCCESS"
        except grpc.RpcError as e:
            outcome = e.code().name
    payloads = {"TransOut": out.hex(), "TransIn": into.hex()}
    print(json.dumps({"gid": gid, "outcome": outcome, "payloads": payloads}))


if __name__ == "__main__":
    main()
