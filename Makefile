# drbot: `make run` starts the bot, `make test` runs every test. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run test bench check-config clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall when the dependency list changes.
$(STAMP): pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# With Slack credentials in the environment: connect to Slack.
# Without: say how to connect, then open the local shell on the demo estate.
run: $(STAMP)
	@if [ -n "$$SLACK_APP_TOKEN$$SLACK_SIGNING_SECRET" ]; then \
		$(VENV)/bin/drbot run; \
	else \
		echo "No Slack credentials (SLACK_BOT_TOKEN + SLACK_APP_TOKEN or SLACK_SIGNING_SECRET): opening the local shell on deploy/demo.yaml. See README.md, 'Connect Slack'."; \
		$(VENV)/bin/drbot shell --config deploy/demo.yaml; \
	fi

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m bench

check-config: $(STAMP)
	$(VENV)/bin/drbot check-config

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
