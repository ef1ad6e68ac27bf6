"""emogs.face"""
