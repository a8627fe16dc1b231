"""A TCC global transaction through the PyPI `dtmcli` client.

usage: tcc.py DTM_URL BUSI_URL [normal|raise]

Two branches, registered and tried by dtmcli's Tcc.call_branch: TransOutTry/Confirm/Cancel,
then TransInTry/Confirm/Cancel. In mode `raise` the callback raises after both tries succeeded
(a business check of the initiator). A try answering 409 (the branch service's choice) makes
call_branch raise too. Either way tcc_global_transaction aborts and returns "".
Prints one JSON line: {"gid": ..., "returned": <what tcc_global_transaction returned>,
"payloads": {...}}.
"""

import json
import sys

from dtmcli import tcc, utils


def main():
    dtm, busi = sys.argv[1], sys.argv[2]
    mode = sys.argv[3] if len(sys.argv) > 3 else "normal"
    if mode not in ("normal", "raise"):
        raise SystemExit("unknown mode " + mode)
    gid = utils.gen_gid(dtm)
    out = {"user_id": 1, "amount": 30}
    into = {"user_id": 2, "amount": 30}

    def branches(t):
        t.call_branch(out, busi + "/TransOutTry", busi + "/TransOutConfirm", busi + "/TransOutCancel")
        t.call_branch(into, busi + "/TransInTry", busi + "/TransInConfirm", busi + "/TransInCancel")
        if mode == "raise":
            raise Exception("initiator refuses after the tries")

    returned = tcc.tcc_global_transaction(dtm, gid, branches)
    payloads = {"TransOut": json.dumps(out), "TransIn": json.dumps(into)}
    print(json.dumps({"gid": gid, "returned": returned, "payloads": payloads}))


if __name__ == "__main__":
    main()
