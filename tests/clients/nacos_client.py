#!/usr/bin/env python3
"""A real, long-lived Nacos client for the tests: registers instances and keeps them alive until killed.

  --mode grpc   registers over the Nacos 2.x gRPC protocol (package v2.nacos); the connection owns
                the instances, like a Java or Go SDK client.
  --mode http   registers over the v1 HTTP API and sends beats (package nacos, 1.x style).

Prints `READY` on stdout once every instance is registered, then waits for SIGTERM/SIGKILL.
Started by the integration tests with the testbed's NACOS_PYTHON interpreter.
"""
import argparse
import asyncio
import logging
import os
import signal
import sys
import tempfile


def parse_instances(text):
    out = []
    for item in text.split(","):
        ip, port = item.rsplit(":", 1)
        out.append((ip, int(port)))
    return out


async def run_grpc(args, instances):
    from v2.nacos import ClientConfigBuilder, NacosNamingService, RegisterInstanceParam

    workdir = tempfile.mkdtemp(prefix="nacos-client-")
    builder = (
        ClientConfigBuilder()
        .server_address(args.server)
        .namespace_id(args.namespace)
        .log_level("WARNING")
        .log_dir(workdir)
        .cache_dir(workdir)
    )
    if args.username:
        builder = builder.username(args.username).password(args.password)
    naming = await NacosNamingService.create_naming_service(builder.build())
    for ip, port in instances:
        ok = await naming.register_instance(
            RegisterInstanceParam(
                service_name=args.service,
                group_name=args.group,
                cluster_name=args.cluster,
                ip=ip,
                port=port,
                ephemeral=not args.persistent,
                metadata={"registered-by": "nacos_client.py"},
            )
        )
        if not ok:
            print(f"register {ip}:{port} failed", file=sys.stderr, flush=True)
            sys.exit(1)
    print("READY", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    if args.deregister_on_exit:
        await naming.shutdown()


def run_http(args, instances):
    import threading

    import nacos

    client = nacos.NacosClient(
        args.server,
        namespace=args.namespace,
        username=args.username or None,
        password=args.password or None,
    )
    for ip, port in instances:
        client.add_naming_instance(
            args.service,
            ip,
            port,
            cluster_name=args.cluster,
            group_name=args.group,
            ephemeral=not args.persistent,
            heartbeat_interval=args.beat_seconds if not args.persistent else None,
        )
    print("READY", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--server", required=True, help="host:port of the Nacos HTTP API")
    p.add_argument("--namespace", default="")
    p.add_argument("--service", required=True)
    p.add_argument("--group", default="DEFAULT_GROUP")
    p.add_argument("--cluster", default="DEFAULT")
    p.add_argument("--instances", required=True, help="ip:port[,ip:port...]")
    p.add_argument("--mode", choices=["grpc", "http"], default="grpc")
    p.add_argument("--persistent", action="store_true")
    p.add_argument("--beat-seconds", type=int, default=5)
    p.add_argument("--deregister-on-exit", action="store_true")
    p.add_argument("--username", default=os.environ.get("NACOS_USERNAME", ""))
    p.add_argument("--password", default=os.environ.get("NACOS_PASSWORD", ""))
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    instances = parse_instances(args.instances)
    if args.mode == "grpc":
        asyncio.run(run_grpc(args, instances))
    else:
        run_http(args, instances)


if __name__ == "__main__":
    main()
