"""wireline: git push → image build → registry push → Swarm deploy (not built yet)."""
