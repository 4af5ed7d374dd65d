#!/usr/bin/env python3
"""Side-by-side report of one benches/media_vs_rtpengine.sh run: trunkgate's JSON (tg_load.py)
and rtpengine's (the baseline's bench.py), against the media engine's goals.
Usage: report.py TG_JSON RTPENGINE_JSON
"""

import json
import sys

GOAL_RATIO = 1.0       # CPU per packet at or below rtpengine's (aim: 0.8)
AIM_RATIO = 0.8
GOAL_KIB_PER_CALL = 150
GOAL_P99_US = 1000


def last_json(path):
    with open(path) as f:
        lines = [line for line in f if line.strip().startswith("{")]
    if not lines:
        sys.exit("no JSON result in %s" % path)
    return json.loads(lines[-1])


def us(x):
    return ">200000" if x is None else str(x)


def verdict(ok):
    return "met" if ok else "NOT met"


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    tg, re_ = last_json(sys.argv[1]), last_json(sys.argv[2])
    n = tg["calls"]
    tg_loss = max(tg.get("loss_to_far_end_pct", 100), tg.get("loss_back_pct", 100))
    re_loss = max(re_["A_to_B_loss_pct"], re_["B_to_A_loss_pct"])
    ratio = tg["tg_us_per_pkt"] / re_["rtpengine_us_per_pkt"] if re_["rtpengine_us_per_pkt"] else None
    print("## %d calls, 50 pkt/s each way per call (20 ms PCMU, 172-byte RTP), %.0f s of media\n"
          % (n, tg["duration_s"]))
    print("| | trunkgate (RTP <-> DTLS-SRTP, str0m engine) | rtpengine 10.5 (RTP <-> SDES-SRTP, userspace) |")
    print("|---|---|---|")
    print("| calls up / asked | %d / %d | %d / %d |" % (tg["calls_up"], n, re_["calls"], re_["calls"]))
    print("| relayed pkt/s in the window (offered) | %d (%d) | %d (%d) |" % (
        tg["pps_relayed_in_window"], tg["pps_offered"], re_["pps_relayed_in_window"], re_["pps_offered"]))
    print("| CPU, %% of one core (usr+sys) | %.1f (%.1f+%.1f) | %.1f (%.1f+%.1f) |" % (
        tg["tg_cpu_pct"], tg["tg_usr_pct"], tg["tg_sys_pct"],
        re_["rtpengine_cpu_pct"], re_["rtpengine_usr_pct"], re_["rtpengine_sys_pct"]))
    print("| **µs CPU per relayed packet** | **%.2f** | **%.2f** |" % (tg["tg_us_per_pkt"], re_["rtpengine_us_per_pkt"]))
    print("| loss, %% (toward far end / back) | %.4f / %.4f | %.4f / %.4f |" % (
        tg["loss_to_far_end_pct"], tg["loss_back_pct"], re_["A_to_B_loss_pct"], re_["B_to_A_loss_pct"]))
    print("| far end CPU, %% of one core | simulator %.1f | (generator is both ends) |" % tg["sim_cpu_pct"])
    print("| generator CPU %% / max lag ms | %.1f / %.1f | %.1f / %.1f |" % (
        tg["gen_cpu_pct"], tg["gen_max_lag_ms"], re_["gen_cpu_pct"], re_["gen_max_lag_ms"]))
    print("| machine busy, %% of 2 cores | %.1f | %.1f |" % (tg["machine_busy_pct_of_2"], re_["machine_busy_pct_of_2"]))
    print("| UDP RcvbufErrors in the run | %d %s | %d |" % (
        tg["udp_RcvbufErrors"], tg.get("socket_drops", ""), re_["udp_RcvbufErrors"]))
    print("| other processes' CPU in the window, %% of one core | %.1f | %.1f |" % (
        tg.get("others_cpu_pct", 0), 2 * re_["machine_busy_pct_of_2"] - re_["rtpengine_cpu_pct"] - re_["gen_cpu_pct"]))
    print()
    print("trunkgate RSS: idle %d KiB, %d calls up with media %d KiB -> **%.1f KiB per call**; "
          "after hang-up %d KiB" % (tg["tg_rss_idle_kib"], tg["calls_up"], tg["tg_rss_up_kib"],
                                    tg["tg_rss_per_call_kib"], tg["tg_rss_after_kib"]))
    print("Echo round trip (generator -> trunkgate -> simulator echo -> trunkgate -> generator), %d samples: "
          "p50 %s us, p90 %s us, **p99 %s us**, p99.9 %s us, max %s us"
          % (tg["rtt_samples"], us(tg["rtt_p50_us"]), us(tg["rtt_p90_us"]), us(tg["rtt_p99_us"]),
             us(tg["rtt_p999_us"]), tg["rtt_max_us"]))
    print()
    print("Goals:")
    print("- %d concurrent calls with zero loss: %s (trunkgate %d up, loss %.4f %%; rtpengine loss %.4f %%)"
          % (n, verdict(tg["calls_up"] == n and tg_loss == 0), tg["calls_up"], tg_loss, re_loss))
    if ratio is not None:
        print("- CPU per packet at or below rtpengine's (aim 0.8x): ratio %.2f: %s%s"
              % (ratio, verdict(ratio <= GOAL_RATIO), ", aim met" if ratio <= AIM_RATIO else ""))
    print("- <= %d KB per call: %.1f KiB: %s" % (GOAL_KIB_PER_CALL, tg["tg_rss_per_call_kib"],
                                                verdict(tg["tg_rss_per_call_kib"] <= GOAL_KIB_PER_CALL)))
    p99 = tg["rtt_p99_us"]
    print("- added latency p99 <= 1 ms: echo round trip p99 %s us (two trunkgate passes and the "
          "simulator's echo): %s" % (us(p99), verdict(p99 is not None and p99 <= GOAL_P99_US)))


if __name__ == "__main__":
    main()
