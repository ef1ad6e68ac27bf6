"""emogs.control"""
