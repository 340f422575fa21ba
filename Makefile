.PHONY: setup test demo bench lint

setup:
	scripts/setup.sh

test:
	scripts/test.sh

demo:
	scripts/demo.sh

bench:
	scripts/setup.sh && .venv/bin/python -m bench.run

lint:
	.venv/bin/ruff check src tests bench && .venv/bin/mypy src/headway
