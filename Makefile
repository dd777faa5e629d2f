# Single entry point; each target is a thin wrapper over scripts/ so CI and operators run the same code.
.PHONY: setup test lint provision

setup:
	bash scripts/setup.sh

test:
	bash scripts/test.sh

lint:
	bash scripts/test.sh lint

provision: setup
	.venv/bin/ansible-playbook site.yml
