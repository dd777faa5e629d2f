# Single entry point; each target is a thin wrapper over scripts/ so CI and operators run the same code.
.PHONY: setup test lint provision collection

setup:
	bash scripts/setup.sh

test:
	bash scripts/test.sh

lint:
	bash scripts/test.sh lint

provision: setup
	.venv/bin/ansible-playbook site.yml

# The Ansible collection (clawfleet.fleet) as dist/clawfleet-fleet-VERSION.tar.gz
collection:
	bash scripts/install-collection.sh --build-only
