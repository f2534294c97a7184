def main() -> None:  # placeholder until the CLI lands
    raise SystemExit("mahak-sync: not implemented yet")
