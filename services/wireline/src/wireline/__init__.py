"""wireline: `git push` over SSH → image build → registry push → health-gated Swarm deploy."""
