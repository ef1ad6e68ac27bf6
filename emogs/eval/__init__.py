"""emogs.eval"""
