"""Exit 0 if the named service answers at the URL: `probe.py postgres|redis URL`."""

import sys


def main() -> int:
    kind, url = sys.argv[1], sys.argv[2]
    try:
        if kind == "postgres":
            import dj_database_url
            import psycopg

            cfg = dj_database_url.parse(url)
            psycopg.connect(
                dbname=cfg["NAME"], user=cfg["USER"], password=cfg["PASSWORD"] or None,
                host=cfg["HOST"], port=cfg["PORT"] or 5432, connect_timeout=3,
            ).close()
        elif kind == "redis":
            import redis

            redis.Redis.from_url(url, socket_connect_timeout=3).ping()
        else:
            raise SystemExit(f"unknown service {kind}")
    except Exception as exc:  # any failure means "not reachable"
        print(f"{kind} not reachable: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
