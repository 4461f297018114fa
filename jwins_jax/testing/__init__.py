"""Tools for testing the simulator and the strategies written for it."""
